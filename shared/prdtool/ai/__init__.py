"""AI drafting: model providers (Amazon Bedrock) behind one streaming interface."""
