"""DynamoDB models of PRDs and their members (the source of truth for the tables' schemas)."""

from __future__ import annotations

from pynamodb.attributes import NumberAttribute, UnicodeAttribute
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from ..storage import register, table_meta


@register
class PrdModel(Model):
    Meta = table_meta("prds_table")

    id = UnicodeAttribute(hash_key=True)
    title = UnicodeAttribute()
    status = UnicodeAttribute(default="draft")
    owner = UnicodeAttribute()
    template = UnicodeAttribute(default="blank")
    created_at = NumberAttribute()  # epoch milliseconds
    created_by = UnicodeAttribute()
    updated_at = NumberAttribute()
    updated_by = UnicodeAttribute()
    owner_count = NumberAttribute(default=1)  # kept in step with owner memberships (transactions)
    deleted_at = NumberAttribute(null=True)
    purge_at = NumberAttribute(null=True)  # TTL (epoch seconds) once deleted
    # The search index's status (prdtool.search.indexer): when it last indexed the PRD, the newest
    # version indexed, and the last failure (cleared by the next success).
    search_indexed_at = NumberAttribute(null=True)
    search_read_at = NumberAttribute(null=True)  # the indexed text was read then (epoch ms)
    search_indexed_version = UnicodeAttribute(null=True)
    search_error = UnicodeAttribute(null=True)
    # A worker indexing the PRD now holds these (prdtool.search.indexer._claim): until when (epoch ms)
    # and its token, so a second worker does not read and embed the same text at the same time.
    search_claim_until = NumberAttribute(null=True)
    search_claim_by = UnicodeAttribute(null=True)


class MembersByUser(GlobalSecondaryIndex["MemberModel"]):
    class Meta:
        index_name = "by_user"
        projection = AllProjection()

    username = UnicodeAttribute(hash_key=True)
    prd_id = UnicodeAttribute(range_key=True)


@register
class MemberModel(Model):
    Meta = table_meta("members_table")

    prd_id = UnicodeAttribute(hash_key=True)
    username = UnicodeAttribute(range_key=True)
    role = UnicodeAttribute()
    added_by = UnicodeAttribute()
    added_at = NumberAttribute()

    by_user = MembersByUser()
