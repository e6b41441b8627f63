from iotman.cli.main import run

run()
