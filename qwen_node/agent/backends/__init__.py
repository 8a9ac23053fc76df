"""Language-model backends behind one interface (planner.LanguageModel): replay, local, openai."""
