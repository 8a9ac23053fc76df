"""Camera pipeline: frame sources (pure, OpenCV) and the camera_node ROS shell."""
