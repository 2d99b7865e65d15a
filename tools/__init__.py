"""Capabilities as pure, typed functions: encoders, store, index, retrieval, evidence.

Importing this package imports nothing heavy; each module pulls in torch or
chromadb only when it is imported itself.
"""
