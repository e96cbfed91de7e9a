"""The cost API: what each hub, user and community cost, next to what it used, and how the
month is going against the budget. Reads the allocations in force; never writes."""
