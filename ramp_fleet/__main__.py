from ramp_fleet.cli import main

main()
