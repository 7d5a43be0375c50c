"""A corpus of bad (and borderline) inputs for every command, generated into a folder at test time."""
