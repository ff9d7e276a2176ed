"""The shard stage: clip mp4s to Parquet frame shards, an index, and per-clip feature NPZs."""
