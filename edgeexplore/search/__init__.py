"""The search: spaces, study recipes, samplers, and the study loop with its workers."""
