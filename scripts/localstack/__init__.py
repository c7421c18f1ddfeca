"""The local stack: runs the SAM application of ``template.yaml`` on one machine.

Development tooling, not product: nothing in ``shared/`` or ``functions/`` imports it.
See ``manifest.py`` for the contract between the provisioner and the runtime.
"""
