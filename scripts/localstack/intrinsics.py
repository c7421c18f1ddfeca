"""CloudFormation intrinsic functions, resolved the way CloudFormation would for the local stack.

moto's CloudFormation cannot deploy our SAM app (DESIGN §4), so the provisioner creates resources
itself and must compute every value CloudFormation would have computed: ``Ref``, ``Fn::GetAtt``,
``Fn::Sub``, ``Fn::Join``, ``Fn::Select``, ``Fn::Split``, ``Fn::If`` and conditions,
``Fn::FindInMap``, ``Fn::GetAZs`` and ``Fn::Base64``.  Anything else (``Fn::ImportValue``, an
unknown ``Fn::*``, a reference to a resource that does not exist) raises :class:`TemplateError`
instead of leaving a dict where a string was expected, because such a value would otherwise surface
much later as a confusing failure in a handler.

The resolver knows nothing about AWS services: the provisioner tells it each resource's physical
id and attributes (:class:`PhysicalResource`) as it creates them, in dependency order
(:func:`referenced_names` gives the edges).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

NO_VALUE_PARAMETER: Final = "AWS::NoValue"
_SUB_VARIABLE: Final = re.compile(r"\$\{([^}]*)\}")


class TemplateError(Exception):
    """The template uses something the local stack cannot resolve or emulate."""


@dataclass(frozen=True)
class PhysicalResource:
    """What ``Ref`` and ``Fn::GetAtt`` return for one provisioned (or recorded) resource."""

    type: str
    ref: str
    attrs: Mapping[str, str] = field(default_factory=dict)


class _NoValue:
    """``Ref: AWS::NoValue``: the enclosing property or list element disappears."""

    def __repr__(self) -> str:
        return NO_VALUE_PARAMETER


_NO_VALUE: Final = _NoValue()


def scalar_text(value: Any, where: str) -> str:
    """The string CloudFormation would substitute for a scalar (``true``, ``30``, ``"x"``)."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    raise TemplateError(f"{where}: expected a string, got {value!r}")


def _is_intrinsic(value: Any) -> bool:
    if not isinstance(value, dict) or len(value) != 1:
        return False
    (key,) = value
    return key == "Ref" or (isinstance(key, str) and key.startswith("Fn::"))


def _getatt_target(args: Any) -> tuple[Any, Any]:
    """``Fn::GetAtt`` takes ``[LogicalId, Attribute]`` or ``"LogicalId.Attribute"``."""
    if isinstance(args, str) and "." in args:
        logical_id, attribute = args.split(".", 1)
        return logical_id, attribute
    if isinstance(args, list) and len(args) == 2:
        return args[0], args[1]
    raise TemplateError(f"Fn::GetAtt: malformed arguments {args!r}")


def referenced_names(value: Any) -> set[str]:
    """Every logical id or parameter name that ``value`` reaches through Ref, GetAtt or Sub.

    Used to order resource creation; names of parameters and pseudo parameters are included and
    simply match no resource.
    """
    names: set[str] = set()
    if isinstance(value, list):
        for item in value:
            names |= referenced_names(item)
    elif isinstance(value, dict):
        if _is_intrinsic(value):
            ((function, args),) = value.items()
            if function == "Ref" and isinstance(args, str):
                return {args}
            if function == "Fn::GetAtt":
                target, _ = _getatt_target(args)
                return {target} if isinstance(target, str) else set()
            if function == "Fn::Sub":
                if isinstance(args, str):
                    text, variables = args, {}
                elif isinstance(args, list) and len(args) == 2 and isinstance(args[0], str):
                    text, variables = args[0], args[1]
                else:
                    return referenced_names(args)
                for name in _SUB_VARIABLE.findall(text):
                    if not name.startswith("!") and name not in variables:
                        names.add(name.split(".", 1)[0])
                return names | referenced_names(variables)
        for item in value.values():
            names |= referenced_names(item)
    return names


class Resolver:
    """Evaluates intrinsic functions against parameters, conditions and provisioned resources.

    ``parameters`` holds template parameters and pseudo parameters (``AWS::Region`` ...); list-typed
    parameters (``CommaDelimitedList``) are lists.  The provisioner fills :attr:`resources` as it
    goes and adds logical ids whose ``Condition`` is false to :attr:`excluded`, so that a reference
    to one of those is reported as such rather than as a typo.
    """

    def __init__(
        self,
        *,
        parameters: Mapping[str, str | list[str]],
        conditions: Mapping[str, Any],
        mappings: Mapping[str, Any],
        region: str,
    ) -> None:
        self._parameters = parameters
        self._condition_expressions = conditions
        self._mappings = mappings
        self._region = region
        self._condition_values: dict[str, bool] = {}
        self._conditions_in_progress: set[str] = set()
        self.resources: dict[str, PhysicalResource] = {}
        self.excluded: set[str] = set()

    def resolve(self, value: Any, where: str) -> Any:
        """``value`` with every intrinsic evaluated; ``where`` (e.g. a logical id) names errors."""
        resolved = self._resolve(value, where)
        return None if resolved is _NO_VALUE else resolved

    def text(self, value: Any, where: str) -> str:
        """Resolve ``value`` and require a scalar, returned as CloudFormation would render it."""
        return scalar_text(self.resolve(value, where), where)

    def condition(self, name: str) -> bool:
        """The value of the named template condition (evaluated once, cycles reported)."""
        if name in self._condition_values:
            return self._condition_values[name]
        if name not in self._condition_expressions:
            raise TemplateError(f"unknown condition {name!r}")
        if name in self._conditions_in_progress:
            raise TemplateError(f"condition {name!r} depends on itself")
        self._conditions_in_progress.add(name)
        try:
            value = self._evaluate_condition(self._condition_expressions[name], f"condition {name}")
        finally:
            self._conditions_in_progress.discard(name)
        self._condition_values[name] = value
        return value

    # ------------------------------------------------------------------ evaluation

    def _resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            items = (self._resolve(item, where) for item in value)
            return [item for item in items if item is not _NO_VALUE]
        if not isinstance(value, dict):
            return value
        if _is_intrinsic(value):
            ((function, args),) = value.items()
            return self._intrinsic(function, args, where)
        resolved = {key: self._resolve(item, where) for key, item in value.items()}
        return {key: item for key, item in resolved.items() if item is not _NO_VALUE}

    def _intrinsic(self, function: str, args: Any, where: str) -> Any:
        match function:
            case "Ref":
                return self._ref(self._resolve(args, where), where)
            case "Fn::GetAtt":
                target, attribute = _getatt_target(args)
                return self._attribute(
                    scalar_text(self._resolve(target, where), where),
                    scalar_text(self._resolve(attribute, where), where),
                    where,
                )
            case "Fn::Sub":
                return self._sub(args, where)
            case "Fn::Join":
                delimiter, items = self._arguments(function, args, 2, where)
                return scalar_text(delimiter, where).join(
                    scalar_text(item, where) for item in self._list(function, items, where)
                )
            case "Fn::Select":
                index, items = self._arguments(function, args, 2, where)
                items = self._list(function, items, where)
                position = int(scalar_text(index, where))
                if not 0 <= position < len(items):
                    raise TemplateError(f"{where}: Fn::Select index {position} out of range")
                return items[position]
            case "Fn::Split":
                delimiter, text = self._arguments(function, args, 2, where)
                return scalar_text(text, where).split(scalar_text(delimiter, where))
            case "Fn::If":
                if not (isinstance(args, list) and len(args) == 3 and isinstance(args[0], str)):
                    raise TemplateError(f"{where}: malformed Fn::If {args!r}")
                chosen = args[1] if self.condition(args[0]) else args[2]
                return self._resolve(chosen, where)
            case "Fn::Equals" | "Fn::Not" | "Fn::And" | "Fn::Or":
                return self._evaluate_condition({function: args}, where)
            case "Fn::FindInMap":
                name, top, second = (scalar_text(item, where) for item in self._arguments(function, args, 3, where))
                try:
                    return self._mappings[name][top][second]
                except KeyError:
                    raise TemplateError(f"{where}: Fn::FindInMap {name}/{top}/{second} not found") from None
            case "Fn::GetAZs":
                region = scalar_text(self._resolve(args, where), where) or self._region
                return [f"{region}{zone}" for zone in "abc"]
            case "Fn::Base64":
                text = scalar_text(self._resolve(args, where), where)
                return base64.b64encode(text.encode()).decode()
            case "Fn::ImportValue":
                raise TemplateError(
                    f"{where}: Fn::ImportValue needs another stack's exports, which the local stack "
                    "does not have; pass the value as a parameter instead"
                )
            case _:
                raise TemplateError(f"{where}: intrinsic function {function} is not supported locally")

    def _arguments(self, function: str, args: Any, count: int, where: str) -> list[Any]:
        if not (isinstance(args, list) and len(args) == count):
            raise TemplateError(f"{where}: {function} takes {count} arguments, got {args!r}")
        return [self._resolve(item, where) for item in args]

    @staticmethod
    def _list(function: str, value: Any, where: str) -> list[Any]:
        if not isinstance(value, list):
            raise TemplateError(f"{where}: {function} expects a list, got {value!r}")
        return value

    def _ref(self, name: Any, where: str) -> Any:
        if not isinstance(name, str):
            raise TemplateError(f"{where}: Ref takes a name, got {name!r}")
        if name == NO_VALUE_PARAMETER:
            return _NO_VALUE
        if name in self._parameters:
            return self._parameters[name]
        return self._resource(name, where).ref

    def _attribute(self, logical_id: str, attribute: str, where: str) -> str:
        resource = self._resource(logical_id, where)
        if attribute not in resource.attrs:
            known = ", ".join(sorted(resource.attrs)) or "none"
            raise TemplateError(
                f"{where}: Fn::GetAtt {logical_id}.{attribute} is not emulated for {resource.type} "
                f"(known attributes: {known})"
            )
        return resource.attrs[attribute]

    def _resource(self, logical_id: str, where: str) -> PhysicalResource:
        if logical_id in self.resources:
            return self.resources[logical_id]
        if logical_id in self.excluded:
            raise TemplateError(f"{where}: refers to {logical_id}, whose Condition is false")
        raise TemplateError(f"{where}: refers to {logical_id}, which is neither a parameter nor a resource")

    def _sub(self, args: Any, where: str) -> str:
        if isinstance(args, str):
            text, variables = args, {}
        elif isinstance(args, list) and len(args) == 2 and isinstance(args[1], dict):
            text = scalar_text(self._resolve(args[0], where), where)
            variables = {name: self._resolve(value, where) for name, value in args[1].items()}
        else:
            raise TemplateError(f"{where}: malformed Fn::Sub {args!r}")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return scalar_text(variables[name], where)
            if name in self._parameters:
                return scalar_text(self._parameters[name], where)
            if "." in name:
                logical_id, attribute = name.split(".", 1)
                return self._attribute(logical_id, attribute, where)
            return self._resource(name, where).ref

        return _SUB_VARIABLE.sub(substitute, text)

    def _evaluate_condition(self, expression: Any, where: str) -> bool:
        """Conditions use ``Fn::Equals/Not/And/Or`` and ``{"Condition": name}`` (only here)."""
        if isinstance(expression, dict) and len(expression) == 1:
            ((function, args),) = expression.items()
            if function == "Condition" and isinstance(args, str):
                return self.condition(args)
            if function == "Fn::Equals":
                left, right = self._arguments(function, args, 2, where)
                return scalar_text(left, where) == scalar_text(right, where)
            if function in ("Fn::Not", "Fn::And", "Fn::Or") and isinstance(args, list):
                values = [self._evaluate_condition(item, where) for item in args]
                if function == "Fn::Not":
                    if len(values) != 1:
                        raise TemplateError(f"{where}: Fn::Not takes one condition")
                    return not values[0]
                return all(values) if function == "Fn::And" else any(values)
        value = self._resolve(expression, where)
        if isinstance(value, bool):
            return value
        raise TemplateError(f"{where}: not a condition: {expression!r}")
