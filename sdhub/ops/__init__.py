"""Operations on model files: convert, prune, cast, inspect, hash (path in, path or report out)."""
