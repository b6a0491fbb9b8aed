"""Processes that run outside any request: webhook delivery, garbage collection and the
worker's periodic housekeeping.

Each owns its transactions (it is a boundary, like a request or a job) and reaches the blob
store only through the ``BlobStore`` protocol.
"""
