from prepshelf.cli import main

raise SystemExit(main())
