from git_theta.cli import main

raise SystemExit(main())
