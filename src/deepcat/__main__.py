from deepcat.cli import main

raise SystemExit(main())
