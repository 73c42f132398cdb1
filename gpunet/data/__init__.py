"""Data: the IDX reader, dataset discovery and verified download, toy problems, the loader."""
