"""Implementation of jinit. Import from :mod:`jinit`, not from here."""
