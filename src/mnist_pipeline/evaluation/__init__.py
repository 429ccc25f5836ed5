"""Scoring a trained model on the test split: the evaluate stage's metrics and confusion."""
