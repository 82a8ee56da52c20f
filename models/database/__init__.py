"""Reading, validating and compiling SModelS text databases."""
