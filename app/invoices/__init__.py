"""Monthly invoices per community: draft, approved, sent, paid or void."""
