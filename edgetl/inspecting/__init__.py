"""What a user does with finished builds and reports: classify photos, compare two benches."""
