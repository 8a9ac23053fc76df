// Loads SDF files with libsdformat (the parser Gazebo itself uses) and prints, per file, every
// error, then the model's links (pose resolved in the model frame) and joints, one per line:
//   ERROR <code> <message>
//   LINK <name> <x> <y> <z> <roll> <pitch> <yaw>
//   JOINT <name> <type> <parent> <child>
// Exit code: 0 when no file had an error. Built by tests/sim/test_sdf_parser.py.
#include <sdf/sdf.hh>

#include <iostream>
#include <string>

namespace {
const char* JointTypeName(sdf::JointType t) {
  switch (t) {
    case sdf::JointType::FIXED: return "fixed";
    case sdf::JointType::REVOLUTE: return "revolute";
    case sdf::JointType::CONTINUOUS: return "continuous";
    case sdf::JointType::PRISMATIC: return "prismatic";
    default: return "other";
  }
}

// One line per message: errors can span lines.
std::string OneLine(std::string s) {
  for (char& c : s) if (c == '\n' || c == '\r') c = ' ';
  return s;
}
}  // namespace

int main(int argc, char** argv) {
  sdf::ParserConfig config;
  // Unknown elements are reported (as warnings -> errors here) so the test can list them itself.
  config.SetUnrecognizedElementsPolicy(sdf::EnforcementPolicy::ERR);
  int bad = 0;
  for (int i = 1; i < argc; ++i) {
    sdf::Root root;
    sdf::Errors errors = root.Load(argv[i], config);
    std::cout << "FILE " << argv[i] << "\n";
    for (const auto& e : errors) {
      std::cout << "ERROR " << static_cast<int>(e.Code()) << " " << OneLine(e.Message()) << "\n";
      ++bad;
    }
    const sdf::Model* model = root.Model();
    for (uint64_t w = 0; w < root.WorldCount(); ++w)
      std::cout << "WORLD " << root.WorldByIndex(w)->Name() << " models=" << root.WorldByIndex(w)->ModelCount() << "\n";
    if (model == nullptr) continue;
    std::cout << "MODEL " << model->Name() << "\n";
    for (uint64_t l = 0; l < model->LinkCount(); ++l) {
      const sdf::Link* link = model->LinkByIndex(l);
      ignition::math::Pose3d pose;  // sdformat 12 (Debian 12) still names it ignition::
      sdf::Errors pe = link->SemanticPose().Resolve(pose, "__model__");
      for (const auto& e : pe) { std::cout << "ERROR " << static_cast<int>(e.Code()) << " " << OneLine(e.Message()) << "\n"; ++bad; }
      std::cout << "LINK " << link->Name() << " " << pose.Pos().X() << " " << pose.Pos().Y() << " " << pose.Pos().Z()
                << " " << pose.Rot().Roll() << " " << pose.Rot().Pitch() << " " << pose.Rot().Yaw() << "\n";
    }
    for (uint64_t j = 0; j < model->JointCount(); ++j) {
      const sdf::Joint* joint = model->JointByIndex(j);
      std::cout << "JOINT " << joint->Name() << " " << JointTypeName(joint->Type()) << " " << joint->ParentLinkName()
                << " " << joint->ChildLinkName() << "\n";
    }
  }
  return bad ? 1 : 0;
}
