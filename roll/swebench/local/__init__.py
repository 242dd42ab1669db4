"""The local SWE-style set: instances made from real open-source packages (sdists from the package index) by
injecting bugs and hiding the tests that catch them. Only metadata and patches ship (docker/swebench-local/); the
sources are downloaded when the images are built."""
