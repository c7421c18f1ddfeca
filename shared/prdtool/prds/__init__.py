"""PRDs: their metadata, members and roles (the document content lives in ``collab``)."""
