"""helpsteer: the data layer of the platform -- canonical preference/rating store, format readers,
validation + quarantine, synthetic data, and the `helpsteer` command line (helpsteer/cli/)."""

__version__ = "0.1.0"
