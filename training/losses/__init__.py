"""Losses over in-batch similarity matrices. Each takes tensors, never a model:
sim_student (B, B) cosine, sim_teacher (B, B) cosine, labels (B, B) in {0, 1}, keep (B, B) bool."""
