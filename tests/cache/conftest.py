from emulators import s3_server  # noqa: F401 - fixture for the bucket test
