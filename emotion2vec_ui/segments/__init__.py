"""Who spoke when: speech segments -> speakers -> turns, each recognised as an utterance."""
