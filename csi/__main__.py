from trellis.csi.main import main

main()
