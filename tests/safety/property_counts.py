"""test name -> [generated cases, supervisor steps] (filled by the property-based tests)."""
PROPERTY_CASES: dict = {}
