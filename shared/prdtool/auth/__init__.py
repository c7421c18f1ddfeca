"""Authentication (tokens, revocation, the identity provider) and authorization (the policy)."""
