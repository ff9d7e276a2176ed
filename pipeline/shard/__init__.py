"""The shard stage: clip mp4s to frame shards, per-clip feature NPZs, and the clip index."""
