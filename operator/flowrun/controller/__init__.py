"""The controller runtime: the part of the operator that talks to the cluster. The engine
(flowrun.engine) decides; a pass applies what it decided; a controller syncs its objects by
passes. docs/architecture.md draws the modules and the data flow."""
