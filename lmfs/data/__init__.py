"""Data filtering for LM pre-training (CS336 assignment 4): WARC reading, HTML text extraction, PII masking, quality filters, deduplication."""
