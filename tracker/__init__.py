"""bitswarm HTTP tracker."""
