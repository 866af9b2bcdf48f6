"""Data: discovery of every layout, checks, the patient-grouped split, the cache, the input
door (image reading), synthetic images and the acquisition shifts."""
