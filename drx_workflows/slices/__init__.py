"""Stage 4: named dataset slices over structure metadata, with seeded stratified splits."""
