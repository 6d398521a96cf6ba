from rideshare.worker.main import main

main()
