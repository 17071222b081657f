"""`mmr serve`: thin HTTP routes and a search page over the same `Engine` the CLI uses."""
