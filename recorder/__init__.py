"""Flight recorder: ROS topics into MCAP files in the rosbag2 MCAP layout (see README.md)."""
