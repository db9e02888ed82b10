from csi.main import main

main()
