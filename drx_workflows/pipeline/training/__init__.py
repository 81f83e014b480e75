"""Training as FireWorks: slice workflows whose training fireworks start by themselves, grid search."""
