"""Scripts that time hubmeter's main paths on generated data and print figures."""
