"""Reading the store: filters, queries and Pareto fronts (nothing here trains or times)."""
