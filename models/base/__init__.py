"""The base model side: encoder, two-tower training and its data, the gate, artifacts and the faiss index."""

__all__ = ["encoder", "index", "artifact", "trainingdata", "two_tower", "training", "gate"]
