"""Evaluation metrics shared by the graph_rec models."""
