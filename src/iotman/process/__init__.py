"""Process stage: JSONPath queries, tag rules, output selections and constructors."""
