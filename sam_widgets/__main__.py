from sam_widgets.cli import main

raise SystemExit(main())
