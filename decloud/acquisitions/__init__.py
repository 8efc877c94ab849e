"""Acquisition layouts: the declarative description (Python or JSON) of the images a sample is made of."""
