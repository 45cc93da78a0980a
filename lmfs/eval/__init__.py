"""Evaluations: GSM8K (generation + answer match), MMLU (answer-letter log-likelihood), perplexity; resumable
per-example JSONL, summaries with confidence intervals."""
