"""Access stage: principals, bearer tokens, scope checks."""
