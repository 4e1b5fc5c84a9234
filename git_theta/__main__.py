from git_theta.launcher import main

raise SystemExit(main())
