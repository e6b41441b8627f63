"""The ``iotman`` command line."""
