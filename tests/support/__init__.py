"""What the tests share beyond fixtures: helpers live here, fixtures in the conftest.py files."""
